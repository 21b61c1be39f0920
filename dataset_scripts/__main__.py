"""`python -m dataset_scripts records.jsonl --hre hre.jsonl --out DIR [--push-to-hub REPO_ID]`."""

from .build import main

if __name__ == "__main__":
    main()
