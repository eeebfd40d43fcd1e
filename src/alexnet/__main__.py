"""``python -m alexnet`` (also what ``torchrun -m alexnet`` runs)."""

from alexnet.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
