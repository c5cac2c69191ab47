"""What a GPU script decides on the device: bf16 autocast, fused AdamW, a GradScaler, cuda tensors.
--dry-run on a machine without a GPU must trace these CUDA branches (ccprof.profiler.dryrun_cuda)."""
import torch
device = "cuda" if torch.cuda.is_available() else "cpu"
dtype = torch.bfloat16 if device == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
model = torch.nn.Sequential(torch.nn.Linear(256, 1024), torch.nn.GELU(), torch.nn.Linear(1024, 256)).to(device)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=device == "cuda")
scaler = torch.cuda.amp.GradScaler(enabled=dtype == torch.float16)
for step in range(int(__import__("sys").argv[1]) if len(__import__("sys").argv) > 1 else 100):
    x = torch.randn(64, 256, device=device)
    with torch.autocast(device_type=device, dtype=dtype, enabled=device == "cuda"):
        loss = model(x).pow(2).mean()
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    opt.zero_grad(set_to_none=True)
    if step % 10 == 0:
        torch.cuda.synchronize() if device == "cuda" else None
        print(step, loss.item())
