"""``python -m spinemorph_web --server URL --port 8080``: serve the SpineMorph page."""

from spinemorph_web.app import main

if __name__ == "__main__":
    main()
