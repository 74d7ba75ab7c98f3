// GENERATED from apim_policies/fragments/*.xml by infra/scripts/sync_apim_fragments.py.
// Do not edit: run the script after adding, renaming or removing a fragment.
// One policy fragment per file, named after the file: <include-fragment fragment-id="NAME" />.

@description('Name of the API Management service that receives the fragments.')
param apimName string

resource apim 'Microsoft.ApiManagement/service@2024-05-01' existing = {
  name: apimName
}

resource fragment_chargeback_build_envelope 'Microsoft.ApiManagement/service/policyFragments@2024-05-01' = {
  parent: apim
  name: 'chargeback-build-envelope'
  properties: {
    format: 'xml'
    description: 'apim_policies/fragments/chargeback-build-envelope.xml'
    value: loadTextContent('../../../apim_policies/fragments/chargeback-build-envelope.xml')
  }
}

resource fragment_chargeback_capture_caller 'Microsoft.ApiManagement/service/policyFragments@2024-05-01' = {
  parent: apim
  name: 'chargeback-capture-caller'
  properties: {
    format: 'xml'
    description: 'apim_policies/fragments/chargeback-capture-caller.xml'
    value: loadTextContent('../../../apim_policies/fragments/chargeback-capture-caller.xml')
  }
}

resource fragment_chargeback_capture_headers 'Microsoft.ApiManagement/service/policyFragments@2024-05-01' = {
  parent: apim
  name: 'chargeback-capture-headers'
  properties: {
    format: 'xml'
    description: 'apim_policies/fragments/chargeback-capture-headers.xml'
    value: loadTextContent('../../../apim_policies/fragments/chargeback-capture-headers.xml')
  }
}

resource fragment_chargeback_error_response 'Microsoft.ApiManagement/service/policyFragments@2024-05-01' = {
  parent: apim
  name: 'chargeback-error-response'
  properties: {
    format: 'xml'
    description: 'apim_policies/fragments/chargeback-error-response.xml'
    value: loadTextContent('../../../apim_policies/fragments/chargeback-error-response.xml')
  }
}

resource fragment_chargeback_error_status 'Microsoft.ApiManagement/service/policyFragments@2024-05-01' = {
  parent: apim
  name: 'chargeback-error-status'
  properties: {
    format: 'xml'
    description: 'apim_policies/fragments/chargeback-error-status.xml'
    value: loadTextContent('../../../apim_policies/fragments/chargeback-error-status.xml')
  }
}

resource fragment_chargeback_send_envelope 'Microsoft.ApiManagement/service/policyFragments@2024-05-01' = {
  parent: apim
  name: 'chargeback-send-envelope'
  properties: {
    format: 'xml'
    description: 'apim_policies/fragments/chargeback-send-envelope.xml'
    value: loadTextContent('../../../apim_policies/fragments/chargeback-send-envelope.xml')
  }
}

resource fragment_chargeback_serving_backend 'Microsoft.ApiManagement/service/policyFragments@2024-05-01' = {
  parent: apim
  name: 'chargeback-serving-backend'
  properties: {
    format: 'xml'
    description: 'apim_policies/fragments/chargeback-serving-backend.xml'
    value: loadTextContent('../../../apim_policies/fragments/chargeback-serving-backend.xml')
  }
}

resource fragment_chargeback_stream_options 'Microsoft.ApiManagement/service/policyFragments@2024-05-01' = {
  parent: apim
  name: 'chargeback-stream-options'
  properties: {
    format: 'xml'
    description: 'apim_policies/fragments/chargeback-stream-options.xml'
    value: loadTextContent('../../../apim_policies/fragments/chargeback-stream-options.xml')
  }
}

@description('Ids of the fragments deployed, in file-name order.')
output fragmentIds array = [
  'chargeback-build-envelope'
  'chargeback-capture-caller'
  'chargeback-capture-headers'
  'chargeback-error-response'
  'chargeback-error-status'
  'chargeback-send-envelope'
  'chargeback-serving-backend'
  'chargeback-stream-options'
]
