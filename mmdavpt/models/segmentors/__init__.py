from .davpt_encoder_decoder import DAVPTEncoderDecoder

__all__ = ['DAVPTEncoderDecoder']
