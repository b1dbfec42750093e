"""Response cache: exact and semantic, on Redis or embedded in-process.

    cache = build_cache(settings.cache)
    hit = await cache.get(req, embedding)        # exact first, then semantic
    await cache.put(req, embedding, response, chunks, route)

Modules: keys (what makes two requests the same), index (in-process vector
index), store (the storage seam + the embedded MemoryStore), redis_store
(shared Redis backend), redis_client (its connection pool), index_log (the
event log that keeps each replica's in-process index in step), vsearch (Redis FT.* vector search), response_cache
(the policy the pipeline calls), stored_responses (the Responses API's store of
responses by id, for previous_response_id; not a cache), testing (a throwaway redis-server for tests
and benchmarks). The admin route is router/cache/admin.py.
"""

from router.cache.response_cache import CacheHit, ResponseCache, build_cache

__all__ = ["CacheHit", "ResponseCache", "build_cache"]
