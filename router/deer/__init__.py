"""The DEER driver over an OpenAI-compatible completions API (vLLM, llama.cpp):
upstream (the Upstream a reasoning model is served through), run (one request's
state), thinking (the probe loops), calls, response, template (chat -> prompt)."""
