"""Advisor defaults and thresholds, in one place, each with its source (HTA-style).

Every number an advisor projects from goes through a name here, so a rationale can state it
and a user can override it through ``AdviceContext``. Figures marked *unverified* are
ccprof's own starting points, said plainly in the rationale that uses them. No time saving is
a constant here: step-time effects are re-costed by the hardware stage's cost model
(``ccprof.hardware``: kernels, translate, step, edits, comm); tests/advisors/test_recost.py
fails on a literal speed-up.
"""
from __future__ import annotations

__all__ = [
    "CONFIDENCE_WEIGHT",
    "BYTES_FP32", "BYTES_BF16", "ADAM_STATE_BYTES_PER_PARAM",
    "DATA_WAIT_FRAC_MIN", "GPU_UTIL_LOW_PCT",
    "LORA_LINEAR_SHARE_MIN", "LORA_PUBLISHED",
    "WARM_START_EMBED_SHARE_MIN", "WARM_START_MIN_DIM",
    "CKPT_ACT_SHARE_MIN", "MP_MATMUL_SHARE_MIN", "MP_OTHER_ACT_KEEP_FRAC",
    "QUANT_4BIT_BYTES_PER_PARAM", "QUANT_INT8_BYTES_PER_PARAM", "QUANT_FROZEN_SHARE_MIN",
    "EARLY_STOP_MIN_DELTA_FRAC",
    "DEDUP_MIN_FRAC", "MINHASH_NUM_PERM", "MINHASH_THRESHOLD", "MINHASH_SHINGLE",
    "BATCH_MAX_MULTIPLE", "MIN_SAVING_FRAC", "STATUS_LABEL",
]

# --- bytes --------------------------------------------------------------------------------
BYTES_FP32 = 4
BYTES_BF16 = 2
# fp32 AdamW: exp_avg + exp_avg_sq = 8 bytes/param (Rajbhandari et al., ZeRO, SC 2020: the model-state accounting).
ADAM_STATE_BYTES_PER_PARAM = 8

# --- thresholds other tools use (PyTorch Profiler TensorBoard plugin, pytorch/kineto tb_plugin) ---
# (peak memory > 90% of the device, its memory threshold, is the tensors' rule of the one memory fit:
# ccprof.hardware.projection.MEMORY_HEADROOM_FRAC)
# PyTorch TensorBoard plugin: DataLoader > 5% of step -> more workers.
DATA_WAIT_FRAC_MIN = 0.05
# PyTorch TensorBoard plugin: GPU utilization < 50% -> larger batch.
GPU_UTIL_LOW_PCT = 50.0

# --- finetune ---------------------------------------------------------------------------------
# The fine-tuning budget is the tweak's option ``budget_frac`` (ccprof/artefacts/tweaks.py, with its source).

# --- lora -----------------------------------------------------------------------------------
# The rank is the tweak's option ``rank`` (ccprof/artefacts/tweaks.py, with its source).
# "Linear-heavy": Linear weights hold at least half the parameters (ccprof threshold).
LORA_LINEAR_SHARE_MIN = 0.50
LORA_PUBLISHED = "Hu et al. (ICLR 2022): 25% faster training, 3x less memory on GPT-3 175B"

# --- warm_start -----------------------------------------------------------------------------
# Embeddings "large" when they hold >= 10% of the parameters (ccprof threshold).
WARM_START_EMBED_SHARE_MIN = 0.10
# Published vectors to warm-start from are at least this wide: GloVe's smallest is 50-d
# (Pennington et al., EMNLP 2014: 50/100/200/300), word2vec and fastText 300-d, transformer
# token embeddings 128-d and up. Narrower embeddings (a 2-d toy TextCNN) have nothing to load.
WARM_START_MIN_DIM = 50
# The share of the run it saves is the tweak's option ``run_frac`` (ccprof/artefacts/tweaks.py).

# --- checkpointing ------------------------------------------------------------------------
# Recommend when activations are >= 30% of peak (ccprof threshold): below that, recomputation
# costs up to +33% compute (Chen et al. 2016, "Training Deep Nets with Sublinear Memory Cost") for little memory.
CKPT_ACT_SHARE_MIN = 0.30

# --- mixed_precision -----------------------------------------------------------------------
MP_MATMUL_SHARE_MIN = 0.20            # fp32 matmul FLOPs share worth converting (ccprof threshold)
# Fallback only, when the profile has no per-module activation ledger: share of saved bytes
# kept at 4 bytes under autocast. With the ledger, norms/softmax/loss stay fp32 and the rest
# halves (mixed_precision.project_mixed_precision_memory; within 6% on a tiny Llama).
MP_OTHER_ACT_KEEP_FRAC = 0.0


# --- distillation ---------------------------------------------------------------------------
# The student keeps every ``keep_every``-th block, the tweak's option (2: half the depth, as
# DistilBERT: half the layers of BERT-base, 40% smaller, 60% faster, 97% of quality -- Sanh et al. 2019).

# --- pruning --------------------------------------------------------------------------------
# The share pruned is the tweak's option ``amount`` (0.3; ccprof/artefacts/tweaks.py).

# --- quantization ---------------------------------------------------------------------------
# QLoRA NF4 with double quantization: 4.127 bits/param (Dettmers et al. 2023) = 0.516 bytes.
QUANT_4BIT_BYTES_PER_PARAM = 4.127 / 8
# LLM.int8(): 1 byte/param plus per-row scales (Dettmers et al. 2022); PyTorch docs: 4x smaller.
QUANT_INT8_BYTES_PER_PARAM = 1.0
QUANT_FROZEN_SHARE_MIN = 0.50         # frozen weights worth quantizing (ccprof threshold)

# --- early_stopping -------------------------------------------------------------------------
# Patience is the tweak's option ``patience`` (3, Lightning's default; ccprof/artefacts/tweaks.py).
# Improvement smaller than 0.5% of the loss counts as none (ccprof threshold).
EARLY_STOP_MIN_DELTA_FRAC = 0.005

# --- data_curation --------------------------------------------------------------------------
DEDUP_MIN_FRAC = 0.01                 # below 1% duplicates, nothing worth curating
# MinHash: 128 permutations, Jaccard 0.8 on 5-token shingles (Lee et al., ACL 2022 use
# MinHash with 5-grams and 0.8 for near-duplicate text).
MINHASH_NUM_PERM = 128
MINHASH_THRESHOLD = 0.8
MINHASH_SHINGLE = 5


# --- batch_size -----------------------------------------------------------------------------
BATCH_MAX_MULTIPLE = 8                # never propose more than 8x the current batch


# Ranking: a projection's share of cost saved is weighed by how sure the advisor is that it
# holds on this script. The weights are ccprof's policy, not a measurement: "high" is a direct
# consequence of what was measured (already-measured waste, exact arithmetic), "medium" rests
# on the cost model (median 15% error on published step times, bench/projection_accuracy.py),
# "low" also depends on the model's quality or convergence surviving the change.
CONFIDENCE_WEIGHT = {"high": 1.0, "medium": 0.7, "low": 0.35}


# A tweak is recommended only when the share of the run's GPU cost it saves is above this and above
# the projection's own band (what the profile measured rather than counted: a batch's making,
# ccprof.hardware.host). Below it the advice says "no measurable saving", with the figures.
# ccprof's threshold, *unverified*: a saving under 1% is of the order of a GPU training step's own
# run-to-run variation, so neither a --verify re-run nor the user's bill would show it.
MIN_SAVING_FRAC = 0.01

# How each status reads in a report or a table.
STATUS_LABEL = {"recommended": "recommended", "no_saving": "no measurable saving",
                "already_applied": "already applied", "not_applicable": "not applicable"}
