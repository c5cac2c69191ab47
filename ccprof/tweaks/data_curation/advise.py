"""data_curation: drop exact and near-duplicate examples; spend steps on new data."""
from __future__ import annotations

from ccprof.advisors import constants as C
from ccprof.advisors._common import clamp, fmt_pct, make_advice
from ccprof.advisors._registry import register
from ccprof.advisors.context import AdviceContext
from ccprof.artefacts.advice import Advice
from ccprof.artefacts.profile import Profile

__all__ = ["advise_data_curation"]

SNIPPET = """
import hashlib
seen, keep = set(), []
for i in range(len(dataset)):
    key = hashlib.blake2b(repr(dataset[i]).encode(), digest_size=16).hexdigest()
    if key not in seen:
        seen.add(key)
        keep.append(i)
dataset = torch.utils.data.Subset(dataset, keep)
# near duplicates: datasketch.MinHashLSH(threshold=0.8, num_perm=128) over 5-token shingles
# then: curriculum (short sequences first) or importance sampling by per-example loss
"""


@register("data_curation")
def advise_data_curation(profile: Profile, ctx: AdviceContext) -> Advice:
    """Saving = duplicate share x the run's epoch cost (the duplicates' steps)."""
    d = profile.data
    if "dedup" in profile.static.lines:
        return make_advice("data_curation", "already_applied", profile, ctx, confidence="medium", snippet=SNIPPET,
                           rationale=f"The script already deduplicates (line {profile.static.lines['dedup']}).")
    scan = ctx.scan or {}
    if scan:
        exact, near = scan.get("duplicate_frac"), scan.get("near_duplicate_frac")
        scope, n = "dataset", scan.get("examples")
    else:
        exact, near, scope, n = d.duplicate_frac, d.near_duplicate_frac, d.duplicate_scope, len(d.fingerprints)
    if exact is None and near is None:
        return make_advice("data_curation", "not_applicable", profile, ctx, confidence="low", snippet=SNIPPET,
                           rationale=("No examples were fingerprinted (no DataLoader seen, or sampling was off); "
                                      "pass --scan-data to fingerprint the whole dataset."))
    dup = max(exact or 0.0, near or 0.0)
    what = (f"{fmt_pct(exact or 0.0)} exact duplicates" +
            (f" and {fmt_pct(near)} including near duplicates (MinHash, Jaccard >= {C.MINHASH_THRESHOLD})" if near is not None else ""))
    where = (f"among all {n:,} examples of the dataset" if scope == "dataset"
             else f"among the {n or 'few'} examples sampled during profiling")
    if dup < C.DEDUP_MIN_FRAC:
        more = "" if scope == "dataset" else " Pass --scan-data to check the whole dataset."
        return make_advice("data_curation", "not_applicable", profile, ctx, confidence="medium" if scope == "dataset" else "low",
                           snippet=SNIPPET, rationale=f"There are {what} {where}: nothing worth dropping.{more}",
                           details={"duplicate_frac": exact, "near_duplicate_frac": near, "scope": scope})
    frac = clamp(dup)
    rationale = (f"There are {what} {where}. Each epoch spends that share of its steps on repeats; dropping them "
                 f"saves {fmt_pct(frac)} of every epoch's cost, so of the run. Curriculum or importance sampling "
                 "(by per-example loss) can cut more, but ccprof does not project them.")
    if scope != "dataset":
        rationale += " The share comes from a small sample: confirm with --scan-data."
    return make_advice("data_curation", "recommended", profile, ctx,
                       confidence="medium" if scope == "dataset" else "low",
                       time_saved_frac=frac, rationale=rationale, snippet=SNIPPET,
                       assumptions=["Duplicates teach nothing new: the run reaches the same quality with that share fewer steps.",
                                    f"Duplicate share measured over scope '{scope}'."],
                       sources=["Lee et al., Deduplicating Training Data Makes Language Models Better, ACL 2022",
                                "Abbas et al., SemDeDup, 2023 (dropping 50% of LAION-440M ~halves training time)"],
                       details={"duplicate_frac": exact, "near_duplicate_frac": near, "scope": scope, "examples": n})
