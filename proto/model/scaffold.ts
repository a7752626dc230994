// SCAFFOLD's wire names, shared by the site (client-sdk/scaffold-site.ts) and the coordinator
// (coordinator/strategy/scaffold.ts): a site's Δc_i for adapter tensor T travels in its upload as
// `scaffold.dc/T`, after the adapter deltas (the upload is sorted by name, and 's' follows 'b' of base_model.…).
export const CONTROL_DELTA_PREFIX = 'scaffold.dc/';
