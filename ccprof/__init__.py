"""ccprof: a cost profiler and advisor for PyTorch training.

    from ccprof import profile_model
    profile = profile_model(model, optimizer, batches, loss_fn, steps=10, gpu="h100-sxm")

    with ccprof.profile(steps=5, gpu="h100-sxm") as prof:     # around a loop of your own
        train()
    prof.profile, prof.advice, prof.write("ccprof-report")
"""
__version__ = "0.1.0"

__all__ = ["__version__", "profile_model", "analyze_script", "advise", "profile"]


def __getattr__(name):  # keep `import ccprof` cheap: torch loads only when asked for
    if name in ("profile_model", "analyze_script", "advise"):
        from ccprof import api  # here: `import ccprof` stays cheap; the stages load when asked for

        return getattr(api, name)
    if name == "profile":
        from ccprof.integrations.inline import profile  # here: torch loads when the block starts

        return profile
    raise AttributeError(name)
