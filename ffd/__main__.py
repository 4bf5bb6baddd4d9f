from ffd.cli import main

main()
