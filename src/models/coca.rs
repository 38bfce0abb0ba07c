//! open_clip CoCa vision tower with the attentional pooler.
