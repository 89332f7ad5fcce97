"""Decoding what users upload (images, audio, video) and finding what matters in it
(faces, speech, words). No emotion models here."""
