"""selax: learning image representations and labels together by clustering with optimal transport.

Importing `selax` imports nothing heavy: each submodule pulls in only what it needs, so that
`from selax.sinkhorn import sinkhorn` depends on jax alone.
"""

__version__ = "0.1.0"
