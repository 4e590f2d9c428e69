"""Backend-agnostic pieces of d2l's neural style transfer.

Nothing here imports a deep learning framework at import time: each backend
imports its own, so that a missing framework never breaks the others.
"""
