from ccprof.cli import main

main()
