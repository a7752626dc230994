// Original file: proto/fedtune.proto


export interface EvaluationAck {
}

export interface EvaluationAck__Output {
}
