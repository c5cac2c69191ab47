"""ccprof.advisors"""
