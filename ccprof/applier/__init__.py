"""ccprof.applier"""
