"""The client-facing protocols: each module translates one wire format to and from
the pipeline's request and reply (protocol: OpenAI chat and completions)."""
