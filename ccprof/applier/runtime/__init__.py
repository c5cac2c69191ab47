"""ccprof.applier.runtime"""
