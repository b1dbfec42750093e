"""The settings sections, one module per part of the gateway they configure.

Import them from `router.config`, the public face, which also holds the root
`Settings` and the loader; this package is on the ground floor with it (layer 0)
and imports nothing but pydantic."""
