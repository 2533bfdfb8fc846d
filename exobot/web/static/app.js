// Small enhancements only: every page and action works without this file.
