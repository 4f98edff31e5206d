"""Domain-free building blocks: FFN variants, attention, selective scan, blocks.

Imports torch (and timm layers) only; never `apps` or `pipelines`.
"""
