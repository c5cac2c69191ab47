"""describe_model on real tiny models built from configs."""
from __future__ import annotations

import warnings

import torch
from torch import nn

from ccprof.artefacts.profile import ModelInfo, Profile
from ccprof.profiler.flops import FlopPass
from ccprof.profiler.memory import MemoryLedger
from ccprof.profiler.model_info import describe_model, reached_roots, repeated_blocks
from tests.helpers.models import resnet18


def _llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, vocab_size=256)
    return LlamaForCausalLM(cfg)


def test_tiny_llama_facts_and_measured_tree():
    torch.manual_seed(0)
    model = _llama()
    opt = torch.optim.AdamW(model.parameters())
    x = torch.randint(0, 256, (2, 16))
    fp = FlopPass({"": model})
    fp.start()
    model(input_ids=x, labels=x).loss.backward()
    flops, _ = fp.stop()
    led = MemoryLedger({"": model}, [opt], torch.device("cpu"))
    led.start()
    model(input_ids=x, labels=x).loss.backward()
    _, acts = led.stop()
    info = describe_model({"": model}, flops.by_module, fp.forward_by_module, acts)

    # params: embed 256·64 + 2 layers·(4·64² attn + 3·64·128 mlp + 2·64 norms) + 64 norm + 256·64 head
    n = 256 * 64 + 2 * (4 * 64 * 64 + 3 * 64 * 128 + 2 * 64) + 64 + 256 * 64      # 115,008
    assert (info.class_, info.params, info.trainable_params) == ("LlamaForCausalLM", n, n)
    assert info.param_dtypes == {"float32": n}
    assert info.buffers_bytes == 2 * 8 * 4                # rotary inv_freq + original_inv_freq: head_dim/2 fp32
    assert info.roots == ["LlamaForCausalLM"]
    [block] = info.repeated_blocks
    assert (block.container, block.class_, block.count) == ("model.layers", "LlamaDecoderLayer", 2)
    assert block.params_each == 4 * 64 * 64 + 3 * 64 * 128 + 2 * 64
    assert block.names == ["model.layers.0", "model.layers.1"]
    [emb] = info.embeddings
    assert (emb.name, emb.num_embeddings, emb.dim, emb.trainable) == ("model.embed_tokens", 256, 64, True)
    assert len(info.linear_names) == 2 * 7 + 1 and "model.layers.1.mlp.down_proj" in info.linear_names
    assert info.hf_model_type == "llama"
    assert info.hf_config["hidden_size"] == 64 and info.hf_config["num_hidden_layers"] == 2
    assert all(isinstance(v, (int, float, str, bool)) for v in info.hf_config.values())
    assert info.gradient_checkpointing is False

    stats = {m.name: m for m in info.modules}
    assert stats[""].depth == 0 and stats["model.layers.0.self_attn"].depth == 4
    assert stats[""].params == n and stats["model.layers.0"].params == block.params_each
    assert stats[""].flops == flops.per_step
    assert stats["model.layers.0.mlp"].forward_flops == 2 * 3 * 64 * 128 * 32
    assert stats["model.layers.1"].activation_bytes > 0
    # it rides in the Profile's JSON
    again = Profile.from_json(Profile(model=info).to_json()).model
    assert isinstance(again, ModelInfo) and again == info


def test_gradient_checkpointing_seen_on_the_live_model():
    model = _llama()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.gradient_checkpointing_enable()
    assert describe_model({"": model}).gradient_checkpointing is True


def test_gpt2_conv1d_counts_as_linear_and_several_roots_are_prefixed():
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=64,
                                     n_positions=32, bos_token_id=0, eos_token_id=0))
    head = nn.Linear(32, 2)
    info = describe_model({"lm": gpt, "cls": head})
    assert "lm.transformer.h.0.attn.c_attn" in info.linear_names      # transformers Conv1D
    assert "cls" in info.linear_names
    assert info.roots == ["GPT2LMHeadModel", "Linear"]
    # GPT-2 ties lm_head to wte: counted once
    assert info.params == sum(p.numel() for p in gpt.parameters()) + 32 * 2 + 2
    assert info.repeated_blocks[0].container == "lm.transformer.h"
    assert {e.name for e in info.embeddings} == {"lm.transformer.wte", "lm.transformer.wpe"}
    assert info.hf_model_type == "gpt2" and info.hf_config["n_layer"] == 2
    stats = {m.name: m for m in info.modules}
    assert stats["lm"].depth == 0 and stats["lm.transformer"].depth == 1 and stats["cls"].depth == 0


def test_repeated_blocks_need_same_class_and_shapes():
    same = nn.ModuleList(nn.Linear(4, 4) for _ in range(3))
    mixed = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 4), nn.ReLU())
    frozen = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2))
    for p in frozen[0].parameters():
        p.requires_grad_(False)
    root = nn.ModuleDict({"same": same, "mixed": mixed, "frozen": frozen})
    blocks = {b.container: b for b in repeated_blocks({"": root})}
    assert set(blocks) == {"same", "frozen"}           # ReLUs have no parameters; Linears differ
    assert blocks["same"].count == 3 and blocks["same"].params_each == 20
    assert blocks["frozen"].names == ["frozen.0", "frozen.1"]
    info = describe_model({"": root})
    assert info.trainable_params == info.params - 20
    assert info.hf_model_type is None and info.hf_config == {}


def test_every_resnet_stage_holds_repeated_blocks():
    """torchvision's resnet18 layout: each stage's first block downsamples (other shapes, a
    downsample branch), so blocks of identical shapes found layer1 only; by class all 4 stages."""
    m = resnet18()
    blocks = {b.container: b for b in repeated_blocks({"": m})}
    assert set(blocks) == {"layer1", "layer2", "layer3", "layer4"}
    assert [b.count for b in blocks.values()] == [2, 2, 2, 2]
    assert blocks["layer2"].names == ["layer2.0", "layer2.1"] and blocks["layer2"].class_ == "BasicBlock"
    # layer2: block 0 = conv 8->16 (1,152) + bn (32) + conv 16->16 (2,304) + bn (32) + downsample
    # conv 8->16 (128) + bn (32) = 3,680; block 1 = 2,304 + 32 + 2,304 + 32 = 4,672; mean 4,176
    assert blocks["layer2"].params_each == (3_680 + 4_672) // 2 == 4_176
    assert blocks["layer1"].params_each == sum(p.numel() for p in m.layer1[0].parameters())


def test_identical_blocks_inside_differing_stages_are_the_blocks():
    """ConvNeXt-like: 2 stages of different widths, each a Sequential of 3 identical blocks; the
    blocks repeat, the stages only share a class. An MLP's differing Linears are no blocks."""
    def stage(c):
        return nn.Sequential(nn.Linear(c, c), nn.Sequential(*(nn.Sequential(nn.Linear(c, c), nn.GELU())
                                                              for _ in range(3))))
    root = nn.ModuleDict({"stages": nn.Sequential(stage(4), stage(8)),
                          "mlp": nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 4)),
                          # a plain Sequential is one kind of block by its children's classes
                          "net": nn.Sequential(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()),
                                               nn.Sequential(nn.Flatten(), nn.Linear(4, 2)))})
    blocks = [(b.container, b.count) for b in repeated_blocks({"": root})]
    assert blocks == [("stages.1.1", 3), ("stages.0.1", 3)]


def test_bf16_params_and_buffers():
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)).to(torch.bfloat16)
    model[0].weight.data = model[0].weight.data.float()
    info = describe_model({"": model})
    assert info.param_dtypes == {"float32": 16, "bfloat16": 12}
    # running_mean, running_var (bf16, 4 each) + num_batches_tracked (int64)
    assert info.buffers_bytes == 2 * 4 * 2 + 8


# ------------------------------------------------ parameters beyond the called roots' attributes
class _Layer(nn.Linear):
    """Forward-Forward's layer: a Linear with its own optimizer."""

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__(d_in, d_out)
        self.opt = torch.optim.Adam(self.parameters())


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = [_Layer(8, 16), _Layer(16, 16)]          # a plain list: Net registers nothing


def _ids(*opts) -> set[int]:
    return {id(p) for o in opts for g in o.param_groups for p in g["params"]}


def test_layers_in_a_plain_list_are_found_through_their_optimizers():
    net = _Net()
    assert sum(p.numel() for p in net.parameters()) == 0
    named = reached_roots([], [net], _ids(*(layer.opt for layer in net.layers)))
    assert list(named) == ["layers.0", "layers.1"] and named["layers.1"] is net.layers[1]
    info = describe_model(named)
    # 8 x 16 + 16 = 144; 16 x 16 + 16 = 272
    assert info.params == info.trainable_params == 144 + 272
    # the first layer called at the top level (a root), the second only held in the list
    named = reached_roots([net.layers[0]], [net], _ids(*(layer.opt for layer in net.layers)))
    assert list(named) == ["layers.0", "layers.1"]


def test_a_roots_plain_list_and_dict_are_named_under_it():
    root = nn.Linear(4, 4)
    root.heads = [nn.Linear(4, 2), nn.Linear(4, 3)]            # plain list attribute
    root.experts = {"a": nn.Linear(4, 4)}                       # plain dict attribute
    params = list(root.parameters()) + [p for m in (*root.heads, root.experts["a"]) for p in m.parameters()]
    named = reached_roots([root], [], _ids(torch.optim.SGD(params, lr=0.1)))
    assert list(named) == ["", "heads.0", "heads.1", "experts.a"]
    # 20 + 10 + 15 + 20
    assert describe_model(named).params == 65
    # every trained parameter in a called root: nothing to add
    assert reached_roots([root], [], _ids(torch.optim.SGD(root.parameters(), lr=0.1))) == {}


def test_a_bare_tensor_an_optimizer_trains_is_counted():
    w = torch.zeros(3, 5, requires_grad=True)
    info = describe_model({"": nn.Linear(2, 2)}, loose_params=[w])
    assert info.params == info.trainable_params == 6 + 15


def test_tied_parameters_are_recorded_by_every_name():
    """GPT-2's token embedding is its LM head: one Parameter, two names (freezing one freezes both)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from ccprof.profiler.model_info import tied_params
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64, n_positions=16,
                                       bos_token_id=0, eos_token_id=0))
    info = describe_model({"": model})
    assert info.tied_params == [["transformer.wte.weight", "lm_head.weight"]]
    assert info.params == sum(p.numel() for p in model.parameters())          # counted once
    untied = nn.Sequential(nn.Embedding(8, 4), nn.Linear(4, 8))
    assert tied_params({"": untied}) == []
    assert tied_params({"student": model}) == [["student.transformer.wte.weight", "student.lm_head.weight"]]
