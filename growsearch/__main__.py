from growsearch.cli import main

main()
