"""`pyreg build`: a Dockerfile into an OCI image in the local store, daemonless.

`dockerfile.py` parses, `words.py` substitutes variables, `context.py` reads the build context
(.dockerignore, paths that must stay inside it), `layer.py` turns a step's filesystem changes
into a reproducible layer tar, `cache.py` remembers steps, `build.py` executes the stages
(RUN in a container on runc through `runtime`). See docs/build-and-run.md.
"""
