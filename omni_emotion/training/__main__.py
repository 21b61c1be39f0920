"""`python -m omni_emotion.training RECIPE.yaml` / `accelerate launch -m omni_emotion.training RECIPE.yaml`."""

from .sft import main

if __name__ == "__main__":
    main()
