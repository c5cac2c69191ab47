"""Fingerprint a whole map-style dataset: exact duplicates (``ccprof.artefacts.fingerprint``, the
fingerprint of the profiler's sampled share) and near duplicates among token sequences (MinHash
LSH via datasketch). ``--scan-data`` feeds the result to ``data_curation`` (it replaces
``data.duplicate_frac``, scope ``dataset``)."""
from __future__ import annotations

from typing import Any, Callable

from ccprof.advisors import constants as C
from ccprof.artefacts.fingerprint import fingerprint

__all__ = ["scan_dataset", "token_sequence"]


def token_sequence(example: Any) -> list[int] | None:
    """The example's token ids if it is (or holds under ``input_ids``) a 1-D integer sequence."""
    x = example
    if isinstance(x, dict):
        x = x.get("input_ids")
    elif isinstance(x, (list, tuple)) and x and not isinstance(x[0], int):
        x = x[0]
    if x is None:
        return None
    try:
        import torch  # here: torch loads only on this path
        if isinstance(x, torch.Tensor):
            if x.dtype.is_floating_point or x.dim() != 1:
                return None
            return [int(v) for v in x.tolist()]
    except ImportError:  # pragma: no cover
        pass
    if isinstance(x, (list, tuple)) and x and all(isinstance(v, int) for v in x):
        return list(x)
    return None


def scan_dataset(dataset: Any, progress: Callable[[int, int], None] | None = None,
                 num_perm: int = C.MINHASH_NUM_PERM, threshold: float = C.MINHASH_THRESHOLD,
                 shingle: int = C.MINHASH_SHINGLE, limit: int | None = None) -> dict:
    """Exact and near-duplicate shares of a map-style dataset (``len`` and ``__getitem__``).

    ``progress(done, total)`` is called after each example (the CLI draws the bar).
    Returns {"examples", "exact_duplicates", "duplicate_frac", "near_duplicates",
    "near_duplicate_frac", "token_inputs", "scope": "dataset", "method"}; a near duplicate is
    an example whose MinHash (``num_perm`` permutations, ``shingle``-token shingles) matches an
    earlier kept one at Jaccard >= ``threshold``; ``near_duplicate_frac`` includes exact ones.

    Example: ``scan_dataset(TensorDataset(x, y))["duplicate_frac"]``.
    """
    from datasketch import MinHash, MinHashLSH  # here: datasketch loads only on this path

    n = len(dataset) if limit is None else min(limit, len(dataset))
    seen: set[str] = set()
    exact = near = 0
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    token_inputs = None
    for i in range(n):
        ex = dataset[i]
        fp = fingerprint(ex)
        dup = fp in seen
        if dup:
            exact += 1
            near += 1
        else:
            seen.add(fp)
            toks = token_sequence(ex)
            if token_inputs is None:
                token_inputs = toks is not None
            if toks:
                mh = MinHash(num_perm=num_perm)
                k = min(shingle, len(toks))
                for j in range(len(toks) - k + 1):
                    mh.update(" ".join(map(str, toks[j:j + k])).encode())
                if lsh.query(mh):
                    near += 1
                else:
                    lsh.insert(str(i), mh)
        if progress is not None:
            progress(i + 1, n)
    return {"examples": n, "exact_duplicates": exact, "duplicate_frac": exact / n if n else 0.0,
            "near_duplicates": near, "near_duplicate_frac": near / n if n else 0.0,
            "token_inputs": bool(token_inputs), "scope": "dataset",
            "method": f"blake2b hashes of each example's input; MinHash LSH num_perm={num_perm}, Jaccard>={threshold}, {shingle}-token shingles"}
