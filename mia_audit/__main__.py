from mia_audit.cli import main

main()
