from stemsep.cli import main

main()
