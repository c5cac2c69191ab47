"""Shared test helpers, imported as ``from tests.helpers.<module> import ...`` (never from a test module).

- ``paths``: the repository's folders the tests read (examples/, tests/fixtures/, tests/scripts/, ...).
- ``profiles``: tiny real models as the profiler sees them (Llama, GPT, CNN), their profiles, cached
  once per session, and a hand-built profile with round numbers.
- ``models``: tiny models and batches the runtime appliers wrap, and the activation ledger.
- ``codemod``: ``rewrite``/``check`` (before -> after, then a second pass changes nothing) and the
  sample scripts the codemod tests share.
- ``reports``: a profile with hostile strings; ``browser``: a Chromium page driven by playwright.
"""
