// Original file: proto/fedtune.proto


export interface DeclineTaskAck {
}

export interface DeclineTaskAck__Output {
}
