"""The client-facing protocols: each translates one wire format to and from the
pipeline's request and reply. protocol.py: OpenAI chat and completions; embeddings.py:
/v1/embeddings; one folder per protocol family: anthropic/ (Messages), responses/
(OpenAI Responses), gemini/ (Google Gemini API)."""
