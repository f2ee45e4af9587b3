from ringfsck.cli import main

main()
