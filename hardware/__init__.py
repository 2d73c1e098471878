"""What the machine computes well: the compute precision rule shared by every stage."""
