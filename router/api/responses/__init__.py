"""OpenAI Responses API front end (`/v1/responses` and its stored-response routes), a
translator over the pipeline.

input.py turns a request into a chat request (with items.py for input items, tools.py
for tools, tool_choice and text.format, fields.py for the shared field checks),
refs.py resolves `item_reference` inputs from stored responses, output.py turns the
completion or chunk stream back into a response object or typed events, routes.py holds
the HTTP handlers.
"""
