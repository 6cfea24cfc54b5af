"""The Parameter Golf domain: trainer, data preparation, size prediction, log parsing.

Never imports `search`; the search service builds on this package.
"""
