"""bridge: the PyTorch / MMDetection side of jaxloss."""
