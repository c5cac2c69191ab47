"""ccprof.applier.codemods"""
