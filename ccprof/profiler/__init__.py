"""ccprof.profiler"""
