"""Turning a conversation into vectors: encoders (MiniLM as ONNX or torch, a hashing
fake) and batcher (the AsyncEmbedder that batches them off the event loop)."""
