"""Data: alphabets, images, ink and file formats."""
