"""thinkgate's gateway, in folders named for a request's steps.

Layers, lowest first; a module imports only from its own layer or those below it
(tests/test_layers.py checks every import, lazy ones included):

  0  router.config, .settings, .errors, .types        the ground floor
  1  policies                                         pure decision logic, no I/O
  2  router.embedding, .cache, .upstreams, .access,   the parts behind each seam
     .decisions, .learning, .tracing
  3  router.deer                                      DEER over a completions API
  4  router.pipeline                                  one request's steps
  5  router.api, router.dashboard                     what clients and operators see
  6  router.app, router.build                         assembly
  7  router.cli                                       the commands

`calibrate` is offline and may import policies, router.embedding and
router.upstreams (and the ground floor), never router.app. Importing `router` or
any package face imports nothing heavy: torch, litellm, sentence-transformers,
onnxruntime and opentelemetry load lazily where they are used.
"""
