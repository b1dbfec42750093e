"""Anthropic Messages front end (`/v1/messages`, `/v1/messages/count_tokens`), a translator
over the pipeline.

request.py turns a Messages request into the OpenAI chat body the pipeline takes
(context.py applies the client's context_management edits to the history first),
reply.py turns the completion or chunk stream back into an Anthropic message or
event stream, routes.py holds the HTTP handlers. Errors leave in Anthropic's shape.
"""
