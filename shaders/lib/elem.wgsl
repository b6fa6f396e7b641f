// Element storage. Inputs and gradients are stored as `Elem` and computed in f32.
// f32 is the only element type so far; the loads and stores go through these two
// functions so that other storage types change this file alone.

alias Elem = f32;

fn elem_load(v: Elem) -> f32 {
    return f32(v);
}

fn elem_store(v: f32) -> Elem {
    return Elem(v);
}
