"""ccprof.reports"""
