"""ccprof.hardware"""
