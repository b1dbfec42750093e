"""Google Gemini API front end (`/v1beta/models/...`), a translator over the pipeline.

request.py turns a GenerateContentRequest into the OpenAI chat body the pipeline
takes (with contents.py, tools.py and fields.py; schema.py converts Gemini's
OpenAPI-style schemas), reply.py turns the
completion or chunk stream back into GenerateContentResponse objects (SSE or a
JSON array), routes.py holds the HTTP handlers. Errors leave in Google's shape
(router.access.error_shapes) from every layer, the middlewares included.
"""
