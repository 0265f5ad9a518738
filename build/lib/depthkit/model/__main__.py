"""`python -m depthkit.model`: print parameters and forward GFLOPs of every registered model."""

from depthkit.model.cost import describe_models, format_models

if __name__ == "__main__":
    print(format_models(describe_models()))
