// Original file: proto/fedtune.proto


export interface SecAggAck {
}

export interface SecAggAck__Output {
}
