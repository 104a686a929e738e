"""Evaluation: image metrics (MSE, PSNR, Frechet distance, class coverage) and the digit classifier."""
