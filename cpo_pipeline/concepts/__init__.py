"""The concept graph: diseases, radiographic attributes and anatomy, and how they relate."""
