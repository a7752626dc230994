// Original file: proto/fedtune.proto


export interface LeaveResponse {
}

export interface LeaveResponse__Output {
}
