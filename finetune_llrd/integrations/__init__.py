"""What layer-wise rates need from libraries whose Trainers build the optimizer their own way.

Each module here imports its library only when it is used, so the core works without it.
"""
